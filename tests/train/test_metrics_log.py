"""The run's metrics log: what a fresh run and a resumed one keep of the files a directory already holds."""

import json

from fastgan.train.metrics import MetricsLog


def _scalars(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars("d_loss")]


def test_a_fresh_run_clears_earlier_curves_and_a_resumed_one_keeps_them_up_to_its_step(tmp_path):
    """TensorBoard read an earlier run's event files left in the directory beside a fresh run's, drawing both."""
    old = MetricsLog(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        old.write(step, {"d_loss": 9.0})
    old.close()
    (tmp_path / "tb" / "notes.txt").write_text("the user's own file")
    fresh = MetricsLog(tmp_path, tensorboard=True)
    fresh.write(1, {"d_loss": 1.0})
    fresh.write(2, {"d_loss": 2.0})
    fresh.close()
    assert _scalars(tmp_path / "tb") == [(1, 1.0), (2, 2.0)] and (tmp_path / "tb" / "notes.txt").is_file()
    resumed = MetricsLog(tmp_path, tensorboard=True, resume_step=1)
    resumed.write(2, {"d_loss": 5.0})
    resumed.close()
    assert _scalars(tmp_path / "tb") == [(1, 1.0), (2, 5.0)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records == [{"step": 1, "d_loss": 1.0}, {"step": 2, "d_loss": 5.0}]
