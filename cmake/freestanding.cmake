# Flags for freestanding x86-64 guest kernels (tests/guests),
# built with the host clang and linked with lld into bare ELF images.
set(HV_GUEST_C_FLAGS
    -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables
    -fcf-protection=none -mno-red-zone -mgeneral-regs-only -mcmodel=small -O2)
set(HV_GUEST_LINK_FLAGS
    -nostdlib -static -fuse-ld=lld -Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack)
