# Finds Lethe's dependencies; a missing one stops the build with the Debian package to install.
# scripts/install-deps.sh installs all of them.
find_package(Threads REQUIRED)
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: install the Debian package 'pkg-config' "
                      "(or run scripts/install-deps.sh)")
endif()

function(lethe_require name module debian_package)
  pkg_check_modules(${name} QUIET IMPORTED_TARGET ${module})
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR "${module} not found: install the Debian package '${debian_package}' "
                        "(or run scripts/install-deps.sh)")
  endif()
  message(STATUS "Found ${module} ${${name}_VERSION}")
endfunction()

lethe_require(INIH      inih        libinih-dev)
lethe_require(LIBEVENT  libevent    libevent-dev)
lethe_require(JEMALLOC  jemalloc    libjemalloc-dev)
lethe_require(CRITERION criterion   libcriterion-dev)
lethe_require(IBVERBS   libibverbs  libibverbs-dev)
lethe_require(RDMACM    librdmacm   librdmacm-dev)
