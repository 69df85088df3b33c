"""What the runs are made from: the two software stacks, the images, the archive, the paper's assets, the Docker daemon
(SDK), keys."""
