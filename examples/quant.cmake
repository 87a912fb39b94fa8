# Quantization examples.
kite_add_example(kite-quantize 06_quantize.cpp)
