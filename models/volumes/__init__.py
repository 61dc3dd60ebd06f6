"""The volumetric task's networks (V-Net, URPC's U-Net), what its methods share, and the registry of its methods."""
