"""What the command line needs of ``train/`` without loading MXNet: the fine-tunings' shared
defaults, which the options of ``quant/`` and ``compress/`` take as theirs."""

# Adam's peak rate for every fine-tuning (formats, pruning, the fp32 controls): high enough for
# power-of-two weights, whose levels are a factor of two apart, to move between levels (at 2e-4
# they stalled; docs/results.md, "Number formats")
FINETUNE_LR = 1e-3
FINETUNE_BATCH_SIZE = 16
# the split every choice made during training is made on (the kept epoch, early stopping); the
# tables report val, which no training step looks at
SELECTION_SPLIT = "dev"
