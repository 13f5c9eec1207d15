"""Builders of the offline defaults: tiny random-weight Qwen3 and SD1.5 made from the real classes, the
hand-set colour VAE and prior that let a LoRA show on tiny-sd, and the example style dataset."""
