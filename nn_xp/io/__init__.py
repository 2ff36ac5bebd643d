"""The file formats: model files (`persistence.py`, behind `model.save` and `nx.load`), ONNX export
(`onnx_export.py`, behind `model.to_onnx`). How nn_xp writes and reads any file (atomic
replacement, regular files only) is `nn_xp/files.py`, below every layer that writes one."""
