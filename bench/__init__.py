"""zeroserve's benchmarks: each runs the thing and its baseline side by side and prints the ratio."""
