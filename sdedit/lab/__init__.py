"""The lab wing: training and measurement, next to the engine and apart from the app.

data       the pinned image sets (npm tarballs) and folders of images, split by emoji
train      the DDPM trainer behind `python -m sdedit train`, and its model card (modelcard)
features   the small emoji classifier whose penultimate layer KID uses (`python -m sdedit features`)
metrics    the two scores: KID (realism) and the paper's L2 (faithfulness), with their sanity distortions
evaluate   the paper's protocol on our model and data (`python -m sdedit eval`)
hardware   the CPU's name, for the training records

The lab may import the engine (`sdedit.pipeline`, `sdedit.imaging`, ...) but never the studio, and the
engine never imports the lab: `sdedit.cli` reaches it lazily, inside the sub-commands that need it, so
`python -m sdedit edit` loads no training code.
"""
