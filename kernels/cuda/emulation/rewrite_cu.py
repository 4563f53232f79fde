#!/usr/bin/env python3
"""Turns a CUDA source into C++ for the host emulation of CUDA (emulated_cuda.h).

Two constructs are not C++: launches, `kernel<<<grid, block[, shared[, stream]]>>>(args)`, become
`::qshard_emu::Launch(::qshard_emu::LaunchConfig(grid, block, ...), ADDRESS, "kernel", [&] { kernel(args); })`
(each thread evaluates the arguments into its own parameters; ADDRESS is the kernel's address,
for the shared-memory limit cudaFuncSetAttribute raised, or nullptr for a template kernel whose
arguments deduce part of its specialization, which has no address to take; "kernel", the
expression as a string, names it in messages); and
dynamic shared memory, `extern __shared__ [__align__(n)] T name[];`, becomes a pointer to the
launch's buffer. Line breaks are kept and a #line directive names the original file, so the
compiler's messages and __FILE__/__LINE__ point into the .cu source.

usage: rewrite_cu.py SOURCE.cu OUTPUT.cc DISPLAY_PATH
"""
import json
import os
import re
import sys

SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:\s]*?)\s+(\w+)\s*\[\s*\]\s*;")


def matching(text, start, opening, closing, step):
    """Index of the bracket matching text[start] (walking by step), skipping nested pairs."""
    depth = 0
    i = start
    while 0 <= i < len(text):
        if text[i] == opening:
            depth += 1
        elif text[i] == closing:
            depth -= 1
            if depth == 0:
                return i
        i += step
    raise ValueError(f"unbalanced {opening}{closing} at offset {start}")


def kernel_start(text, chevrons):
    """Start of the kernel expression before `<<<`: a name, maybe qualified, maybe with template arguments."""
    i = chevrons - 1
    while text[i].isspace():
        i -= 1
    if text[i] == ">":
        i = matching(text, i, ">", "<", -1) - 1
    while i >= 0 and (text[i].isalnum() or text[i] in "_:"):
        i -= 1
    return i + 1


def top_level_count(arguments):
    """How many comma-separated items a template argument or parameter list holds."""
    depth, count = 0, 1
    for c in arguments:
        depth += c in "<([{"
        depth -= c in ">)]}"
        count += c == "," and depth == 0
    return count


def template_kernels(text):
    """{name: number of template parameters} of the kernels defined as templates in text."""
    kernels = {}
    for match in re.finditer(r"template\s*<", text):
        close = matching(text, match.end() - 1, "<", ">", 1)
        definition = re.match(r"\s*__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+"
                              r"(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(", text[close + 1:])
        if definition:
            kernels[definition.group(1)] = top_level_count(text[match.end():close])
    return kernels


def kernel_address(kernel, templates):
    """The expression for the kernel's address, or nullptr where its template arguments are deduced."""
    name, _, explicit = kernel.partition("<")
    if name.strip() in templates:
        given = top_level_count(explicit[:explicit.rfind(">")]) if explicit else 0
        if given < templates[name.strip()]:
            return "nullptr"
    return f"reinterpret_cast<const void*>(&{kernel})"


def rewrite_launches(text, templates):
    out = []
    position = 0
    while True:
        chevrons = text.find("<<<", position)
        if chevrons < 0:
            out.append(text[position:])
            return "".join(out)
        start = kernel_start(text, chevrons)
        close = text.find(">>>", chevrons)
        paren = close + 3
        while text[paren].isspace():
            paren += 1
        if text[paren] != "(":
            raise ValueError(f"launch without arguments at offset {chevrons}")
        end = matching(text, paren, "(", ")", 1)
        kernel = text[start:chevrons].strip()
        config = text[chevrons + 3:close]
        arguments = text[paren + 1:end]
        between = text[close + 3:paren]
        address = kernel_address(kernel, templates)
        name = json.dumps(" ".join(kernel.split()))  # a C string literal of the expression
        call = (f"::qshard_emu::Launch(::qshard_emu::LaunchConfig({config}), {address}, {name}, "
                f"[&] {{ {kernel}{between}({arguments}); }})")
        out.append(text[position:start])
        out.append(call)
        position = end + 1


def rewrite_shared(text):
    def pointer(match):
        element, name = match.group(1).strip(), match.group(2)  # the launch's buffer suits any alignment
        return f"{element}* const {name} = reinterpret_cast<{element}*>(::qshard_emu::DynamicShared());"
    return SHARED.sub(pointer, text)


def main():
    source, output, display = sys.argv[1:4]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    headers = "".join(open(os.path.join(os.path.dirname(source), os.path.basename(h)), encoding="utf-8").read()
                      for h in re.findall(r'#include "kernels/cuda/(\w+\.cuh)"', text))
    text = rewrite_shared(rewrite_launches(text, template_kernels(text + headers)))
    with open(output, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{display}"\n')
        f.write(text)


if __name__ == "__main__":
    main()
