from vatt.ablation.cli import run_from_command_line

if __name__ == "__main__":
    run_from_command_line()
