"""The launch: its options (declared once), the lifecycle, the run dir, the CPU locks, the guardian, `invoke paper`,
`--repeats`."""
