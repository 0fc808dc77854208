// Package x; import "not/this"
package x

/* import "nor/this" */
import "fmt"
import alias "example.com/m/alias"

import (
	"os"
	_ "example.com/m/blank"
	. "example.com/m/dot"
	str "strings" // import "comment/trap"
	`example.com/m/raw`
)

var s = "import \"string/trap\""
var r = `import "raw/trap"`
var c = '"'
