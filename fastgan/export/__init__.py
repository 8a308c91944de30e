"""Export trained generators: ONNX (checked in onnxruntime), int8 Q/DQ quantisation, TensorRT engines and runtime."""
