"""Drivable conditional-NeRF head model: losses and fitting (the model is in
`fnevr_jax.models.nerf_head`, the rendering core in `fnevr_jax.rendering`)."""
