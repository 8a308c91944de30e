"""Data sources (embedded procedural set, CIFAR pickles, class folders) and the batch loader."""
