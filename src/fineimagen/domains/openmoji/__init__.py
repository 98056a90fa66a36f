"""openmoji"""
