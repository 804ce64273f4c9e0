"""The studio wing: SDEdit Studio, the Gradio app that app.py serves. It imports the engine (sdedit.*) only,
never the lab (sdedit.lab); neither of them imports it.

One module per job:

* `limits`: every limit a visitor can meet, read once from the environment.
* `models`: which models may be loaded, the loaded pipeline, what the controls show for a model.
* `guides`: editor values, uploads and pastes -> a guide and a mask (plain PIL/numpy).
* `progress`: the progress bar's words and the reverse-process animation.
* `jobs`: one request checked, requests batched into one forward, `run_edit`, the t0 sweep.
* `queue`: the serving queue (batches of matching requests, newest only per visitor) that edits and previews
  wait in; `slots`: the model's slots (Generate first, previews when no edit waits).
* `live`, `previews`: the canvas's live previews (its calls read, the service, Live on or off) and their compute.
* `guard`: request-body limit, memory, words for rejected values.
* `examples`: the bundled examples (each tab lists its own).
* `ui`: Gradio glue shared by the panels (errors as dialogs, progress, ZeroGPU, the examples strip).
* `tabs/`: one module per tab (layout, the guide and mask it builds, its examples); `TABS` lists them.
* `controls`, `results`: the shared panels; `results` holds the `/edit` and `/sweep` endpoints.
* `tab_results`: each tab's last result, shown in the results column when the tab comes to the front.
* `page`: lays the page out from the tabs and panels, joins them, and `launch`es it.

Everything below the Gradio layer is plain Python, testable without a browser. Problems the user can fix
raise `SDEditError` subclasses whose message is shown as is (`ui.user_message`).
"""
