"""Verification: certification, attacks and resumable robustness sweeps."""
