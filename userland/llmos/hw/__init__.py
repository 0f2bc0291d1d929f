"""Hardware: accelerator inventory (udev, NVIDIA driver), claiming, memory, resources.

model.py and match.py are pure data; udev.py is the only pyudev import, gpu.py the only
nvidia-smi caller, claim.py the only module that changes device nodes, memory.py the only
one that maps and locks memory, resources.py the only psutil import.
"""
