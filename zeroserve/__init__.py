"""zeroserve: event-driven, scale-to-zero model serving."""
