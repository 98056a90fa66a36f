"""Training and evaluation data: the procedural shapes scenes and image-text folders."""
