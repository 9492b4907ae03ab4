"""Bridges between glassmd and the programs it runs inside (LAMMPS)."""
