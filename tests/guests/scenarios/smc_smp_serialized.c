/* The strict variant of smc_smp: cross-modifying code with the
 * serialization the SDM asks for (see smc_smp.c). */
#define SMC_SMP_SERIALIZED 1
#include "smc_smp.c"
