"""CUDA sources of dnnstress, shipped as package data (read by ``dnnstress._cuda``)."""
