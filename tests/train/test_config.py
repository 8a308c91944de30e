import pytest
import torch

from fastgan.train import __main__ as cli
from fastgan.train.config import (
    FAMILY_DEFAULTS,
    Config,
    ConfigError,
    load_config,
    merge,
    parse_override,
    preset_path,
    refuse_unused_keys,
    unread_keys,
)
from fastgan.train.run import build_trainer, resolve_device, resume_config


def test_defaults_follow_the_paper():
    c = Config()
    assert (c.train.batch_size_d, c.train.batch_size_g) == (64, 128)
    assert (c.train.lr_d, c.train.lr_g, c.train.betas) == (2e-4, 1e-4, (0.0, 0.99))
    assert c.train.iterations == 100_000 and c.loss.hinge_margin == 1.0


def test_each_upscaler_family_starts_from_its_authors_schedule():
    """Without a config file, --model srgan gets Ledig et al.'s optimiser and schedule, not HRGAN's β1 = 0 and batch
    128 (its SRGAN stage 2·10⁵ iterations, the rate ÷10 after 10⁵), LAG its authors' batch and weight average; a
    file's, a flag's or an override's own value wins; each passes a new run's unused-keys check."""
    srresnet = load_config(None, updates={"model": {"name": "srgan"}})
    t = srresnet.train
    assert (t.batch_size_g, t.lr_g, t.betas, t.iterations, t.lr_decay_at) == (16, 1e-4, (0.9, 0.999), 1_000_000, 0)
    srgan = load_config(None, ["model.name=srgan", "sr.stage=srgan"])
    assert (srgan.train.lr_d, srgan.train.iterations, srgan.train.lr_decay_at) == (1e-4, 200_000, 100_000)
    for family, sections in FAMILY_DEFAULTS.items():  # only keys the family reads: the unused-keys check stays exact
        name, _, stage = family.partition("/")
        defaults = merge(Config(), {"model": {"name": name}, "sr": {"stage": stage or "srresnet"}})
        keys = [f"{section}.{key}" for section, values in sections.items() for key in values]
        assert unread_keys(defaults, keys) == [], family
    lag = load_config(None, updates={"model": {"name": "lag"}})
    assert (lag.train.batch_size_g, lag.train.ema_decay, lag.train.ema_start) == (16, 0.999, 0)
    assert load_config(None).train == Config().train  # HRGAN: the dataclass defaults, the paper's
    mine = load_config(None, ["train.batch_size_g=4"], {"model": {"name": "srgan"}, "train": {"betas": [0.5, 0.9]}})
    assert (mine.train.batch_size_g, mine.train.betas, mine.train.lr_g) == (4, (0.5, 0.9), 1e-4)
    assert load_config("srresnet-x2-light").train.lr_g == 2e-4  # the preset's
    for config in (srresnet, srgan, lag):
        refuse_unused_keys(config)
    with pytest.raises(ConfigError, match="train.lr_decay_at: not read by a model.name=hrgan"):
        refuse_unused_keys(load_config(None, ["train.lr_decay_at=5"]))
    refuse_unused_keys(merge(Config(), {"model": {"name": "srgan"}}))  # built on the dataclass defaults: nothing set
    with pytest.raises(ConfigError, match="train.lr_decay_at: not read by this model.name=hrgan run"):
        resume_config({"config": Config().to_dict()}, {"train": {"lr_decay_at": 5}})
    srresnet_run = {"config": srresnet.to_dict()}
    with pytest.raises(ConfigError, match="train.lr_d: not read by this model.name=srgan, sr.stage=srresnet run"):
        resume_config(srresnet_run, {"train": {"lr_d": 5e-5}})
    assert resume_config(srresnet_run, {"train": {"lr_decay_at": 7}}).train.lr_decay_at == 7
    with pytest.raises(ConfigError, match="train.lr_decay_factor in \\(0, 1\\]"):
        load_config(None, ["train.lr_decay_factor=0"])


def test_yaml_file_and_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  resolution: 128\ntrain:\n  iterations: 10\n  betas: [0.5, 0.9]\n")
    c = load_config(str(path), ["train.iterations=20", "loss.lambda_ms=0", "train.lr_d=2e-4"])
    assert c.train.lr_d == 2e-4
    assert c.model.resolution == 128 and c.train.iterations == 20 and c.train.betas == (0.5, 0.9)
    assert c.loss.lambda_ms == 0.0 and isinstance(c.loss.lambda_ms, float)


def test_unknown_keys_and_sections_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key train.iteratons"):
        merge(Config(), {"train": {"iteratons": 5}})
    with pytest.raises(ConfigError, match="unknown config section 'trian'"):
        load_config(None, ["trian.iterations=5"])
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  resolutoin: 64\n")
    with pytest.raises(ConfigError, match="model.resolutoin"):
        load_config(str(path))


def test_wrong_types_and_values_are_errors():
    with pytest.raises(ConfigError, match="train.iterations must be an integer"):
        load_config(None, ["train.iterations=lots"])
    with pytest.raises(ConfigError, match="train.lr_g must be a number"):
        load_config(None, ["train.lr_g=fast"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(None, ["train.amp=3"])
    with pytest.raises(ConfigError, match="32, 64 or 128"):
        load_config(None, ["model.resolution=96"])
    with pytest.raises(ConfigError, match="needs data.path"):
        load_config(None, ["data.source=cifar10"])
    with pytest.raises(ConfigError, match="log_every"):
        load_config(None, ["output.log_every=0"])
    with pytest.raises(ConfigError, match="lr_d and train.lr_g must be positive"):
        load_config(None, ["train.lr_d=-1"])
    with pytest.raises(ConfigError, match="hinge_margin"):
        load_config(None, ["loss.hinge_margin=.nan"])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("iterations=5")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_override("sr.held_out=[a")
    with pytest.raises(ConfigError, match=r"train.betas must be two numbers in \[0, 1\)"):
        load_config(None, ["train.betas=[2, 0.99]"])
    with pytest.raises(ConfigError, match="unknown device 'foo'"):
        resolve_device("foo")
    with pytest.raises(ConfigError, match="runs on cpu or cuda, not 'meta'"):
        resolve_device("meta")
    with pytest.raises(TypeError, match="list of 'section.key=value' strings"):
        load_config(None, "train.iterations=5")
    for key in ("data.seed", "train.seed"):
        with pytest.raises(ConfigError, match=rf"{key} must be in \[0, 2\^32\)"):
            load_config(None, [f"{key}={2**62}"])


def test_yaml_12_booleans_only_true_and_false(tmp_path):
    """YAML 1.1 reads off/on/yes/no as booleans: `train.compile: off`, as the errors advise, would be False."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  compile: off\n  amp: false\noutput:\n  out_dir: yes\n")
    config = load_config(str(path))
    assert config.train.compile == "off" and config.train.amp is False and config.output.out_dir == "yes"
    assert load_config(None, ["train.compile=off"]).train.compile == "off"
    with pytest.raises(ConfigError, match="train.amp must be true or false, got 'yes'"):
        load_config(None, ["train.amp=yes"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_override("train.device=\x07")  # a reader error, not a parser one


def test_config_file_not_in_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  seed: 1 # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml is not valid UTF-8 YAML"):
        load_config(str(path))


def test_color_jitter_takes_three_amplitudes_in_zero_one():
    assert Config().data.color_jitter == (0.0, 0.0, 0.0)  # off
    assert load_config(None, ["data.color_jitter=[0.2, 0, 0.1]"]).data.color_jitter == (0.2, 0.0, 0.1)
    for bad in ("[0.2, -0.1, 0.1]", "[0.2, 1.0, 0.1]", "[.nan, 0, 0]", "[0.2, 0.2]", "[0.1, 0.1, 0.1, 0.1]"):
        with pytest.raises(ConfigError, match=r"data.color_jitter: .*\(brightness, contrast, saturation\).*\[0, 1\)"):
            load_config(None, [f"data.color_jitter={bad}"])
    with pytest.raises(ConfigError, match="data.color_jitter must be a number"):
        load_config(None, ["data.color_jitter=[bright, 0, 0]"])
    with pytest.raises(ConfigError, match="data.color_jitter must be a list"):
        load_config(None, ["data.color_jitter=0.2"])
    with pytest.raises(ConfigError, match="unknown config key data.colour_jitter"):
        load_config(None, ["data.colour_jitter=[0.2, 0.2, 0.2]"])


def test_shipped_preset_resolves_and_unknown_preset_lists_them():
    assert preset_path("embedded-64").is_file()
    assert load_config("embedded-64").data.source == "embedded"
    with pytest.raises(ConfigError, match="embedded-64"):
        preset_path("no-such-preset")
    with pytest.raises(ConfigError, match=r"neither a file nor a shipped preset \(embedded-64"):
        preset_path("some/dir/embedded-64")  # a path is not looked up among the presets


def test_resume_may_extend_iterations_and_switch_fused_ops_but_not_change_the_model():
    saved = {"config": Config().to_dict()}
    assert resume_config(saved, {"train": {"iterations": 5}}).train.iterations == 5
    assert resume_config(saved, {"train": {"fused": True}}).train.fused
    assert resume_config(saved, {"train": {"lr_g": 1e-5, "lr_d": 2e-5}}).train.lr_g == 1e-5  # after a NaN loss
    srgan = {"config": load_config(None, ["model.name=srgan", "sr.stage=srgan"]).to_dict()}
    assert resume_config(srgan, {"sr": {"vgg_weights": "/moved/vgg19.pth"}}).sr.vgg_weights == "/moved/vgg19.pth"
    with pytest.raises(ConfigError, match="model.resolution"):
        resume_config(saved, {"model": {"resolution": 128}})


def test_fused_flag_sets_train_fused():
    assert cli._flag_updates(cli._parser().parse_args(["--fused"])) == {"train": {"fused": True}}
    assert cli._flag_updates(cli._parser().parse_args([])) == {}


#: (arguments, the config key they set, its value): non-default values, each of another type or text, so a flag
#: mapped to another key, or its value parsed as another type, shows.
FLAG_TABLE = [
    (["--model", "lag"], "model.name", "lag"),
    (["--resolution", "32"], "model.resolution", 32),
    (["--iterations", "7"], "train.iterations", 7),
    (["--data", "folder"], "data.source", "folder"),
    (["--data-path", "/data/classes"], "data.path", "/data/classes"),
    (["--lambda-ms", "2"], "loss.lambda_ms", 2.0),
    (["--evaluator-weights", "/w/mobilenet.pt"], "loss.evaluator_weights", "/w/mobilenet.pt"),
    (["--out", "/runs/x"], "output.out_dir", "/runs/x"),
    (["--device", "cuda:1"], "train.device", "cuda:1"),
    (["--seed", "11"], "train.seed", 11),
    (["--fused"], "train.fused", True),
    (["--cuda-graphs"], "train.cuda_graphs", True),
    (["--compile", "max-autotune"], "train.compile", "max-autotune"),
    (["--profile", "3"], "output.profile_steps", 3),
    (["--progressive"], "progressive.enabled", True),
]


@pytest.mark.parametrize("argv, key, value", FLAG_TABLE, ids=[argv[0] for argv, _, _ in FLAG_TABLE])
def test_each_flag_sets_its_config_key(argv, key, value):
    section, name = key.split(".")
    updates = cli._flag_updates(cli._parser().parse_args(argv))
    assert updates == {section: {name: value}} and type(updates[section][name]) is type(value)


def test_flag_table_covers_every_flag_and_all_of_them_combine():
    """Every flag of the CLI is in the table; given together, each keeps its own key; --set overrides a flag; --config
    is no override but the file the overrides apply to."""
    assert {argv[0][2:].replace("-", "_") for argv, _, _ in FLAG_TABLE} == set(cli._FLAG_KEYS)
    combined = {}
    for _, key, value in FLAG_TABLE:
        section, name = key.split(".")
        combined.setdefault(section, {})[name] = value
    all_flags = [arg for argv, _, _ in FLAG_TABLE for arg in argv]
    assert cli._flag_updates(cli._parser().parse_args(all_flags)) == combined
    later = cli._parser().parse_args(["--seed", "11", "--iterations", "7", "--set", "train.seed=12", "--config", "c"])
    assert later.config == "c" and cli._flag_updates(later) == {"train": {"seed": 12, "iterations": 7}}


def test_profile_flag_sets_output_profile_steps():
    assert cli._flag_updates(cli._parser().parse_args(["--profile", "3"])) == {"output": {"profile_steps": 3}}
    assert load_config(None, ["output.profile_steps=3"]).output.profile_steps == 3
    assert Config().output.profile_steps == 0
    with pytest.raises(ConfigError, match="output.profile_steps must be >= 0"):
        load_config(None, ["output.profile_steps=-1"])


def test_variable_length_width_list():
    assert load_config(None, ["model.g_widths=[64, 32, 16, 8, 4]"]).model.g_widths == (64, 32, 16, 8, 4)
    with pytest.raises(ConfigError, match="model.g_widths must be a list"):
        load_config(None, ["model.g_widths=64"])


def test_crop_is_checked_against_the_scale_of_the_model_that_trains():
    assert load_config(None, ["model.name=lag", "lag.scale=2", "sr.crop=34"]).sr.crop == 34  # sr.scale=4 irrelevant
    with pytest.raises(ConfigError, match="multiple of lag.scale=8"):
        load_config(None, ["model.name=lag", "lag.scale=8", "sr.crop=68"])
    with pytest.raises(ConfigError, match="multiple of sr.scale=4"):
        load_config(None, ["model.name=srgan", "sr.crop=30"])
    assert load_config(None, ["sr.crop=30"]).model.name == "hrgan"  # an HRGAN run has no crop to check
    with pytest.raises(ConfigError, match="use one or the other"):
        load_config(None, ["model.name=srgan", "progressive.enabled=true", "sr.init_from=runs/srresnet-x4"])
    with pytest.raises(ConfigError, match=r">= 12"):  # 2·scale leaves nothing once PSNR trims `scale` per side
        load_config(None, ["model.name=srgan", "sr.crop=8", "sr.scale=4"])
    assert load_config(None, ["model.name=srgan", "sr.crop=12", "sr.scale=4"]).sr.crop == 12
    with pytest.raises(ConfigError, match="a LAG run starts fresh"):
        load_config(None, ["model.name=lag", "sr.init_from=runs/srresnet-x4"])
    with pytest.raises(ConfigError, match="train.n_dis is HRGAN's"):
        load_config(None, ["model.name=lag", "train.n_dis=5"])


def test_a_cuda_index_beyond_the_visible_gpus_is_a_config_error(monkeypatch):
    """e.g. resuming on a one-GPU machine a run trained on cuda:1: an error naming what to pass, not a traceback from
    deep inside the first CUDA call."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="'cuda:1' asked for .* 1 CUDA device.*cuda:0 to cuda:0"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda", 0) and resolve_device("cuda") == torch.device("cuda")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.ms_real_batch_size=0", "loss.ms_real_batch_size must be >= 1"),
        ("data.num_images=-5", "data.num_images"),
        ("train.lr_g=.inf", "train.lr_d and train.lr_g must be finite"),
        ("loss.hinge_margin=.inf", "loss.hinge_margin and loss.lambda_ms must be finite"),
        ("loss.lambda_ms=.inf", "loss.hinge_margin and loss.lambda_ms must be finite"),
        ("sr.adversarial_weight=.inf", "sr.adversarial_weight must be finite"),
        ("lag.center_weight=.inf", "lag.adversarial_weight, center_weight"),
        ("progressive.lr_scales=[1, .inf]", "progressive.lr_scales must be finite"),
    ],
)
def test_out_of_range_values_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_generator_widths_must_fit_the_resolution():
    assert load_config("embedded-64").model.g_widths == (128, 128, 64, 32, 16)
    with pytest.raises(ConfigError, match=r"model.g_widths: HRGAN-128 has 5 ResBlockUps, so widths needs 6 entries"):
        load_config("embedded-64", ["model.resolution=128"])
    widened = load_config("embedded-64", ["model.resolution=128", "model.g_widths=[128, 128, 64, 32, 16, 8]"])
    assert widened.model.resolution == 128
    assert load_config(None, ["model.resolution=32", "model.g_widths=[8, 8, 8, 8]"]).model.g_widths == (8, 8, 8, 8)


def test_a_new_run_refuses_keys_its_family_does_not_use(tmp_path):
    with pytest.raises(ConfigError, match="HRGAN trains at one resolution"):
        refuse_unused_keys(load_config(None, ["progressive.enabled=true"]))
    with pytest.raises(ConfigError, match="train.ema_decay, train.ema_start: not read by a model.name=srgan"):
        refuse_unused_keys(load_config(None, ["model.name=srgan", "train.ema_decay=0.5", "train.ema_start=3"]))
    lag_with_d_batch = load_config(None, ["model.name=lag", "train.batch_size_d=3"])  # a saved config still loads
    with pytest.raises(ConfigError, match="train.batch_size_d: not read by a model.name=lag"):
        refuse_unused_keys(lag_with_d_batch)
    with pytest.raises(ConfigError, match="train.batch_size_d: not read"):  # checked before any data is read
        build_trainer(merge(lag_with_d_batch, {"output": {"out_dir": str(tmp_path / "run")}}))
    for preset in ("embedded-64", "lag-x4", "srresnet-x2-light"):
        refuse_unused_keys(load_config(preset))
    for overrides, named in (
        (["model.name=lag", "sr.scale=2"], "sr.scale: not read by a model.name=lag run"),  # LAG's is lag.scale
        (["model.name=srgan", "lag.scale=8"], "lag.scale"),
        (["model.name=srgan", "loss.lambda_ms=0", "data.source=cifar10", "data.path=/c"], "data.source, data.path"),
        (["model.name=srgan", "train.lr_d=1e-3", "sr.relativistic=true"], "train.lr_d, sr.relativistic"),
        (["sr.crop=32", "lag.noise_dim=4"], "sr.crop, lag.noise_dim: not read by a model.name=hrgan run"),
    ):
        with pytest.raises(ConfigError, match=named):
            refuse_unused_keys(load_config(None, overrides))
    refuse_unused_keys(load_config(None, ["model.name=srgan", "sr.stage=srgan", "train.lr_d=1e-3"]))  # read there
    refuse_unused_keys(load_config("lag-x4", ["progressive.enabled=false"]))  # a preset's schedule, switched off
    refuse_unused_keys(load_config(None, ["model.name=srgan", "data.seed=3", "data.color_jitter=[0.1, 0, 0]"]))


def test_keys_a_switch_turns_off_are_refused_when_given_but_not_when_a_preset_holds_them():
    """--set progressive.batch_sizes without --progressive, and data.num_images for CIFAR (used whole), trained
    without a word; a preset's schedule switched off, or an embedded preset's size beside --data cifar10, pass."""
    for overrides, named in (
        (["model.name=lag", "progressive.batch_sizes=[2, 4]"], "progressive.batch_sizes: .*progressive.enabled"),
        (["model.name=srgan", "sr.scale=4", "progressive.stable_images=5"], "progressive.stable_images"),
        (["data.source=cifar10", "data.path=/c", "data.num_images=1000"], "data.num_images: .*cifar10 is used whole"),
    ):
        with pytest.raises(ConfigError, match=named):
            load_config(None, overrides)
    with pytest.raises(ConfigError, match="data.num_images"):
        load_config(None, updates={"data": {"source": "folder", "path": "/f", "num_images": 10}})
    assert load_config("lag-x4", ["progressive.enabled=false"]).progressive.stable_images == 8000
    assert load_config("embedded-64", ["data.source=cifar10", "data.path=/c"]).data.num_images == 20000
    load_config(None, ["model.name=lag", "progressive.enabled=true", "progressive.batch_sizes=[2, 4]"])


def test_a_new_run_refuses_settings_its_data_source_or_lambda_ms_leaves_unread():
    for overrides, named in (
        (["data.path=/data/cifar-10-batches-py"], "data.path: not read .*with data.source cifar10"),  # no --data
        (["loss.lambda_ms=0", "loss.ms_real_batch_size=50"], "loss.ms_real_batch_size: .*computes no MS_real"),
        (["model.name=srgan", "sr.images=doom", "sr.held_out=[a]"], "sr.held_out: .*frames of its own"),
        (["model.name=lag", "sr.video_every=2"], "sr.video_every: .*video file"),
        (["model.name=srgan", "sr.images=clip.mp4", "sr.doom_frames=8"], "sr.doom_frames: .*sr.images=doom"),
    ):
        with pytest.raises(ConfigError, match=named):
            refuse_unused_keys(load_config(None, overrides))
    for overrides in (
        ["data.source=cifar10", "data.path=/c"],
        ["data.num_images=100", "loss.lambda_ms=0", "loss.evaluator_weights=/e.pth"],  # evaluation takes these
        ["model.name=srgan", "sr.images=clip.MP4", "sr.video_every=2", "sr.video_frames=9"],
        ["model.name=lag", "sr.images=doom", "sr.doom_frames=8", "sr.doom_scenario=basic"],
        ["model.name=srgan", "sr.images=/photos", "sr.held_out=[a]"],
    ):
        refuse_unused_keys(load_config(None, overrides))
    refuse_unused_keys(load_config("embedded-64", ["data.source=cifar10", "data.path=/c"]))  # its num_images is moot


def test_the_content_loss_layer_must_exist_and_fit_the_smallest_image():
    srgan = ["model.name=srgan", "sr.stage=srgan"]
    with pytest.raises(ConfigError, match="unknown VGG19 layer 'relu9_1'"):
        load_config(None, [*srgan, "sr.perceptual_layer=relu9_1"])
    with pytest.raises(ConfigError, match=r"relu5_4 needs images of at least 16×16 pixels, but this run trains on 14"):
        load_config(None, [*srgan, "sr.scale=2", "sr.crop=14"])
    growing = [*srgan, "sr.scale=4", "sr.crop=24", "progressive.enabled=true"]
    with pytest.raises(ConfigError, match=r"12×12 \(sr.crop=24, its first progressive stage\)"):
        load_config(None, growing)
    assert load_config(None, [*growing, "sr.perceptual_layer=relu4_4"]).sr.perceptual_layer == "relu4_4"  # 8 needed


def test_resume_may_point_at_moved_evaluator_weights_and_data():
    saved = {"config": merge(Config(), {"data": {"source": "cifar10", "path": "/data"}}).to_dict()}
    moved = resume_config(saved, {"loss": {"evaluator_weights": "/moved/mnv3.pth"}, "data": {"path": "/moved/data"}})
    assert (moved.loss.evaluator_weights, moved.data.path) == ("/moved/mnv3.pth", "/moved/data")
    with pytest.raises(ConfigError, match="data.path: not read by this model.name=hrgan run; data.path is read with"):
        resume_config({"config": Config().to_dict()}, {"data": {"path": "/data"}})  # the embedded set has none
