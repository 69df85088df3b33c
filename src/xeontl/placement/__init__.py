"""Where ranks go: the machine's topology (live or recorded) and the pure plan (each rank's CPUs, memory nodes,
threads, env, command)."""
