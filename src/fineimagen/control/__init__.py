"""Training-free control: prompt language, regions and scenes, guidance objects."""
