"""The studio (`sdedit/studio/`, `app.py`): handlers, the serving queue, the API through gradio_client, load."""
