"""The file formats: model files (`persistence.py`, behind `model.save` and `nx.load`), ONNX export
(`onnx_export.py`, behind `model.to_onnx`), and how nn_xp writes and reads any file (`files.py`:
atomic replacement, regular files only)."""
