"""The control plane: moto's server app behind interceptors that make endpoints and training jobs real.

Nothing is imported here: ``deploy.Session`` imports ``control_plane.server`` only when it starts one.
"""
