"""Qwen-VL loading (local paths, Auto classes), box conventions per family, policy setup, tiny offline model."""
