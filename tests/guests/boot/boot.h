/* Constants shared by the assembly entry stubs and the C runtime. */
#ifndef HOSTVISOR_TESTS_GUESTS_BOOT_H
#define HOSTVISOR_TESTS_GUESTS_BOOT_H

#define FORMAT_BZIMAGE 1
#define FORMAT_PVH 2
#define FORMAT_MULTIBOOT 3
#define FORMAT_ELF64 4

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10

#define STACK_SIZE 0x4000

#endif
