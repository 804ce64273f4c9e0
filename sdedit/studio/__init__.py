"""The studio wing: SDEdit Studio, the Gradio app that app.py serves. It may import the engine (sdedit.*) and
the lab (sdedit.lab); the engine never imports it.

One module per job:

* `limits`: every limit a visitor can meet, read once from the environment.
* `models`: which models may be loaded, the loaded pipeline, what the controls show for a model.
* `guides`: editor values, uploads and pastes -> a guide and a mask (plain PIL/numpy).
* `progress`: the progress bar's words and the reverse-process animation.
* `jobs`: one request checked, requests batched into one forward, `run_edit`, the t0 sweep.
* `batching`: the micro-batcher (`MicroBatcher`); `guard`: request-body limit, memory, Gradio's input errors.
* `examples`: the bundled examples (each tab lists its own).
* `ui`: Gradio glue shared by the panels (errors as dialogs, progress, ZeroGPU, the examples strip).
* `tabs/`: one module per tab (layout, the guide and mask it builds, its examples); `TABS` lists them.
* `controls`, `results`: the shared panels; `results` holds the `/edit` and `/sweep` endpoints.
* `page`: lays the page out from the tabs and panels, joins them, and `launch`es it.

Everything below the Gradio layer is plain Python, testable without a browser. Problems the user can fix
raise `SDEditError` subclasses whose message is shown as is (`ui.user_message`).
"""
