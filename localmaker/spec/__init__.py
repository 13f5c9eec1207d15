"""Facts of SageMaker that the client, the control plane and the container share, with no I/O."""
