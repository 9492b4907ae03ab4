"""Data: LAMMPS dump files in and out, periodic graphs, import of public data sets."""
