"""File-system helpers shared by the storage drivers and the backup engine.

Nothing here imports a driver or the backup engine: dependencies point one
way, services -> drivers -> these helpers.
"""
