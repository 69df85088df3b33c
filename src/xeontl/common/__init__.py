"""What every part shares: the one-line user errors, secrets redacted, the spread of repeats."""
