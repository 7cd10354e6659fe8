"""Networks, quantization recipes, datasets, training, EP-init and QONNX export."""
