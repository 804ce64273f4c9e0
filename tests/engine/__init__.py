"""The engine (`sdedit/`): samplers, masks and strength maps, loading, latent models, the CLI and the thread policy."""
