"""The drivable conditional-NeRF head model in one place: the network (`network`, NHM eq. 1-8,
and HeadNeRF as a configuration), its losses (`losses`, NHM eq. 9-11), the training task
(`task`), fitting (`fit`) and the render command line (`render`). The volume-rendering core it
shares with FNeVR's FVR is `fnevr_jax.rendering`."""
