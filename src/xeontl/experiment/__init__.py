"""The experiment: the config and its profiles, the precision switch, data, model, the training recipe, its callbacks,
checkpoints, the MLPerf log."""
