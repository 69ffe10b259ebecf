# Writes OUTPUT, a C++ file holding FILES (the web console's page) as byte
# arrays, listed by page_files() (page_files.h). Run at build time:
#   cmake -DOUTPUT=out.cpp -DFILES="a.html;b.js" -P embed_files.cmake
set(arrays "")
set(table "")
set(index 0)
foreach(file IN LISTS FILES)
  file(READ "${file}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  get_filename_component(name "${file}" NAME)
  string(APPEND arrays "const unsigned char kFile${index}[] = {${hex}};\n")
  string(APPEND table "    {\"${name}\", {reinterpret_cast<const char*>(kFile${index}), sizeof(kFile${index})}},\n")
  math(EXPR index "${index} + 1")
endforeach()
file(WRITE "${OUTPUT}.tmp"
     "// Generated from src/web/page/ by src/web/embed_files.cmake: do not edit.\n"
     "#include \"web/page_files.h\"\n\nnamespace hostvisor::web {\nnamespace {\n${arrays}"
     "const PageFile kFiles[] = {\n${table}};\n}  // namespace\n\n"
     "std::span<const PageFile> page_files() { return kFiles; }\n\n}  // namespace hostvisor::web\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
