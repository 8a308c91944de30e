"""Tiled inference: any image or video through an upscaler (torch, onnxruntime or TensorRT) without seams."""
