#!/usr/bin/env python3
"""Writes the small seed images for the kernel-loader fuzz targets into
fuzz/corpus/load_{bzimage,elf,multiboot}/. Each seed is a minimal valid image
of its format (headers by the specs, a few hundred bytes of payload), so the
fuzzer starts from inputs that get past the header checks.

Usage: src/arch/x86_64/make_fuzz_seeds.py  (from anywhere; paths are relative to the repo)
"""
import os
import struct

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CORPUS = os.path.join(REPO, "fuzz", "corpus")


def payload(size, seed):
    return bytes(((i * 7 + seed * 13 + 1) | 1) & 0xFF for i in range(size))


def bzimage(version=0x020F, setup_sects=1, payload_size=0x600, relocatable=1, pref=0x1000000,
            init_size=0x100000, xloadflags=0x3, initrd_addr_max=0x7FFFFFFF):
    setup = bytearray(((setup_sects or 4) + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200] = 0xEB
    setup[0x201] = 0x26C - 0x202
    struct.pack_into("<IH", setup, 0x202, 0x53726448, version)
    setup[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<I", setup, 0x22C, initrd_addr_max)
    struct.pack_into("<IBBHI", setup, 0x230, 0x200000, relocatable, 21, xloadflags, 2047)
    struct.pack_into("<Q", setup, 0x258, pref)
    struct.pack_into("<I", setup, 0x260, init_size)
    return bytes(setup) + payload(payload_size, 5)


def elf(is64, machine, entry, segments, notes=b"", after_headers=b""):
    """segments: list of (paddr, vaddr, filesz, memsz)."""
    ehsize, phsize = (64, 56) if is64 else (52, 32)
    phnum = len(segments) + (1 if notes else 0)
    body = bytearray(ehsize + phnum * phsize)
    body += after_headers
    while len(body) % 4:
        body.append(0)
    notes_at = len(body)
    body += notes
    phdrs = []
    for i, (paddr, vaddr, filesz, memsz) in enumerate(segments):
        while len(body) % 16:
            body.append(0)
        phdrs.append((1, len(body), vaddr, paddr, filesz, memsz, 0x1000))
        body += payload(filesz, i + 1)
    if notes:
        phdrs.append((4, notes_at, 0, 0, len(notes), len(notes), 4))
    body[0:7] = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1])
    if is64:
        struct.pack_into("<HHIQQQIHHHHHH", body, 16, 2, machine, 1, entry, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
        for i, (t, off, va, pa, fs, ms, al) in enumerate(phdrs):
            struct.pack_into("<IIQQQQQQ", body, 64 + i * 56, t, 7, off, va, pa, fs, ms, al)
    else:
        struct.pack_into("<HHIIIIIHHHHHH", body, 16, 2, machine, 1, entry, 52, 0, 0, 52, 32, phnum, 0, 0, 0)
        for i, (t, off, va, pa, fs, ms, al) in enumerate(phdrs):
            struct.pack_into("<IIIIIIII", body, 52 + i * 32, t, off, va, pa, fs, ms, 7, al)
    return bytes(body)


def note(name, ntype, desc):
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def multiboot_header(flags, aout=None):
    h = struct.pack("<III", 0x1BADB002, flags, (-(0x1BADB002 + flags)) & 0xFFFFFFFF)
    if aout:
        h += struct.pack("<IIIII", *aout)
    return h


def multiboot_aout(load_addr=0x100000, size=0x400, bss=0x800, extra_flags=0):
    image = bytearray(payload(size, 9))
    flags = (1 << 16) | extra_flags
    aout = (load_addr + 0x20, load_addr, load_addr + size, load_addr + size + bss if bss else 0, load_addr + 0x40)
    image[0x20:0x40] = multiboot_header(flags, aout)
    return bytes(image)


def write(target, name, data):
    assert len(data) < 64 * 1024, name
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    write("load_bzimage", "protocol-2.15", bzimage())
    write("load_bzimage", "setup-sects-0", bzimage(setup_sects=0))
    write("load_bzimage", "not-relocatable", bzimage(relocatable=0, pref=0x100000))
    write("load_bzimage", "protocol-2.12-low-initrd-max", bzimage(version=0x020C, initrd_addr_max=0x1FFFFFF))

    segs = [(0x200000, 0x200000, 0x300, 0x1000), (0x400000, 0xFFFFFFFF80400000, 0x80, 0x80)]
    write("load_elf", "elf64", elf(True, 62, 0x200010, segs))
    write("load_elf", "elf64-virtual-entry", elf(True, 62, 0xFFFFFFFF80400010, segs))
    write("load_elf", "pvh-4-byte-note", elf(True, 62, 0x200010, segs, note("Xen", 18, struct.pack("<I", 0x200020))))
    write("load_elf", "pvh-8-byte-note",
          elf(True, 62, 0x200010, segs, note("GNU", 3, b"abcd") + note("Xen", 18, struct.pack("<Q", 0x400004))))

    write("load_multiboot", "aout-kludge", multiboot_aout())
    write("load_multiboot", "aout-kludge-video", multiboot_aout(extra_flags=0x7))
    write("load_multiboot", "elf32",
          elf(False, 3, 0xC0100010, [(0x100000, 0xC0100000, 0x200, 0x1000)], after_headers=multiboot_header(0x3)))


if __name__ == "__main__":
    main()
