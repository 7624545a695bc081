"""The gRPC transport: servicer, converter, errors, engine thread."""
