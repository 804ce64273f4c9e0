"""The lab wing: training and measurement, next to the engine and apart from the app.

data       the pinned image sets (npm tarballs) and folders of images, split by emoji
train      the DDPM trainer behind `python -m sdedit train`, and its model card (modelcard)
features   the small emoji classifier whose penultimate layer KID uses (`python -m sdedit features`)
metrics    the two scores: KID (realism) and the paper's L2 (faithfulness), with their sanity distortions
evaluate   the paper's protocol on our model and data (`python -m sdedit eval`; eval_cli its command line)
edit_runner  the evaluation's batched, seeded edit loop and scores (the cross-check runs its sweep with it)
eval_report  a run's record rendered as markdown; eval_plots its figures and sample sheets
crosscheck the t0 sweep under a second stroke simulator and independent feature networks
records    which page section is rendered from which committed results file (`python -m sdedit.lab.records`)
hardware   the CPU's name, for the training records

The lab may import the engine (`sdedit.pipeline`, `sdedit.imaging`, ...) but never the studio, and the
engine never imports the lab: `sdedit.cli` reaches it lazily, inside the sub-commands that need it, so
`python -m sdedit edit` loads no training code.
"""
