"""Low-bit number formats: the formats (``number_format``), fake-quant simulation
(``simulate``), fine-tuning with a format in the loop (``finetune``) and the bitwidth, pow2 and
clip studies (``study``)."""
