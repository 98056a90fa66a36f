"""Neural networks: text encoders, the Efficient U-Net and its layers."""
