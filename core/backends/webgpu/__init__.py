"""The ``webgpu`` backend: the decoder's named ops as WGSL compute kernels, on wgpu natively or ``navigator.gpu``
in the browser (``device.py`` says what either must provide)."""
