"""Datasets (folder layouts, CIFAR batches), the decoded uint8 cache, and subsets."""
