/* Registers fix glassgnn with LAMMPS when the plugin file is loaded
   (`plugin load glassgnnplugin.so`, or automatically from LAMMPS_PLUGIN_PATH). */

#include "lammpsplugin_api.h"

#include "fix_glassgnn.h"

using namespace LAMMPS_NS;

#ifndef GLASSMD_LAMMPS_VERSION
#define GLASSMD_LAMMPS_VERSION nullptr
#endif

static Fix *glassgnn_creator(LAMMPS *lmp, int argc, char **argv)
{
  return new FixGlassGNN(lmp, argc, argv);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;

  plugin.version = GLASSMD_LAMMPS_VERSION;
  plugin.style = "fix";
  plugin.name = "glassgnn";
  plugin.info = "glassgnn fix style: learned dynamical propensity (glassmd " GLASSMD_VERSION ")";
  plugin.author = "glassmd developers";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &glassgnn_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
