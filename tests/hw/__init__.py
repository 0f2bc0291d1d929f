"""Hardware: udev inventory (emulated), placement, claiming, memory, resources, GPU."""
