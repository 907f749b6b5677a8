"""int8 on MXNet's oneDNN path: calibrate and quantize (``quantize``), one calibrated model the
variants are built from (``calibrated``), per-layer sensitivity (``sensitivity``) and
accuracy-aware tuning (``tune``)."""
