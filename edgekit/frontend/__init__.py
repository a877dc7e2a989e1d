"""Model importers: Keras (.h5/.keras, quantized through TFLite) and int8 TFLite flatbuffers."""
